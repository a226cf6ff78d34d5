"""The local demo: everything ``make run`` starts, on embedded defaults.

It is the one package that composes the others: a local broker (mosquitto, or amqtt
when mosquitto is missing), simulated terminals (device), the collector with its SQLite
store, seeded simulated history (模拟数据) and the control center (analytics). Nothing
imports it except the tests and the benchmarks, which use its brokers.
"""
