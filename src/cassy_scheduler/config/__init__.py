"""The scheduler's config file: its models (model.py, targets.py), the TOML schema
(schema.py), loading with errors that name file, line and key (loader.py), and the checks
and reload guards over a loaded config. Import the submodule that holds a name: this
package loads nothing by itself, so a verb that only needs a model does not load pydantic."""
