from hydraflow.cli import cli

cli(prog_name="hydraflow")
