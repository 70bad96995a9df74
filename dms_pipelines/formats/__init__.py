"""Mapping engines that turn vendor export layouts into canonical rows, driven by YAML profiles."""
