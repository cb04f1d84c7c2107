"""Dual-regression training: the DR loss, dual nets and the trainer."""
