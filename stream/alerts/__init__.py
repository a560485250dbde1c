"""Alerts on people without a mask and on sources that stay down: rules, limits and transports
(webhook, MQTT). Import-light: ``stream.config`` imports :mod:`stream.alerts.options` only."""
