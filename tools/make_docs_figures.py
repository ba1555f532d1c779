"""Regenerate the figures that README.md shows, from the recipes they picture.

    python tools/make_docs_figures.py
"""
from pathlib import Path

from netgraph import build_graph, load_recipe
from netgraph.render import render

ROOT = Path(__file__).resolve().parents[1]
FIGURES = {"docs/resnet9.svg": ("recipes/resnet9.yaml", {})}

if __name__ == "__main__":
    for out, (recipe, options) in FIGURES.items():
        written, note = render(build_graph(load_recipe(ROOT / recipe)), str(ROOT / out), **options)
        print(note or f"wrote {written}")
