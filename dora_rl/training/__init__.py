"""Training learned controllers: controller cards, callbacks, run folders, the trainer."""
