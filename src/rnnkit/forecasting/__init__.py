"""Forecasting: windows and scaling, baselines, metrics and plots (the task is :mod:`rnnkit.tasks.forecast`, the notebook API :class:`rnnkit.Forecaster`)."""
