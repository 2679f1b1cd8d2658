"""The Airflow DAGs: one per channel of duizhang/channels.py, each built by the factory (dags/_factory.py) from
the channel's declaration and its timetable (dags/timetable.toml). A new channel needs no code here.

(Airflow's DAG processor only parses files whose text mentions both "airflow" and "dag", as this line does.)"""
from __future__ import annotations

from _factory import build
from duizhang.channels import CHANNEL_FILES

for _channel in CHANNEL_FILES:
    globals()[_channel] = build(_channel)
