"""The training stage: a plain config (``config``), the loop (``engine``) and its registered
parts (optimizers, schedules, averaging, augmentations, test-time views), parameter groups,
several processes (``distributed``) and the resumable state (``state``). Nothing of YAML."""
