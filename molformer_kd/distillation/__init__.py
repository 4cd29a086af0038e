"""Distillation objectives (named, weighted, composable), the DistillationTrainer and its arguments."""
