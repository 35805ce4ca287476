from django.apps import AppConfig


class SequesterConfig(AppConfig):
    name = "sequester"
