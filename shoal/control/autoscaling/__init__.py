"""Autoscaling of inference components' copies: policies (plain data), decisions (pure), the scaler loop
(effects) and Application Auto Scaling's API over them. Importing this package imports no controller."""
