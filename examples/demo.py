"""A short demo of the sweep grammar (the tutorial's jobs come with the CLI)."""

from hydraflow import collect, count, expand

print("each width=100,300 ->", expand("width=100,300"))
print("all  height=100:300:100 ->", collect("height=100:300:100"))
print("each a=1:3:k b=x,y ->", expand("a=1:3:k b=x,y"))
print("count a=1:100000 b=1:100000 c=1:100000 ->", count("a=1:100000 b=1:100000 c=1:100000"))
