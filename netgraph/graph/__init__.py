"""The network stage: Recipe -> graph (``build``), the ops registry (``ops``), graph rewrites
(``passes``), graph -> torch module (``executor``), and what reads a graph (``summary``,
``render``)."""
