"""Training: fine-tune coupled teachers (and, later, distil decoupled students)."""
