from dataclasses import dataclass
import hydraflow

@dataclass
class Config:
    i: int = 0
    batch: int = 0

@hydraflow.main(Config)
def app(run, cfg):
    pass

if __name__ == "__main__":
    app()
