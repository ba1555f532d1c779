"""Runs: a recipe prepared once into a Plan (``plan``), trained for N seeds (``run``), resumed,
compared (``ablate``, ``stats``), logged (``log``, ``folder``, ``files``) and drawn (``show``)."""
