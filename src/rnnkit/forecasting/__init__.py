"""Forecasting: windows and scaling, baselines, metrics, plots, and the :class:`Forecaster` facade."""
