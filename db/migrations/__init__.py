"""Ringfence's SQL migrations, ``NNNN_name.sql``, applied in order by ``ringfence migrate``.

This file makes the folder the package ``services.common.db.migrations`` (through the symbolic link
``services/common/db/migrations``), so the SQL files ship as package data of an installed Ringfence.
"""
