import sys

print("module run as", __name__, __spec__.name, sys.argv, __file__)
if sys.argv[1:] == ["raise"]:
    raise RuntimeError("from a module")
