"""The built-in tasks, one folder each: ``task.yaml`` beside its Jinja prompt templates
(shipped as package data, so an installed wheel finds them)."""
