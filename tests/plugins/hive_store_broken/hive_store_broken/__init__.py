"""Deliberately broken hive-store plugins (test fixtures).

Each module below is its own entry point in the ``hive_store`` group; hive-store must record
both as failures and keep working:

* ``broken_import`` (:mod:`hive_store_broken.broken_import`) raises ImportError when imported;
* ``misspelled`` (:mod:`hive_store_broken.misspelled`) implements ``hive_store_register_entitys``,
  a hook that does not exist.
"""
