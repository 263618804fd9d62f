"""Reading tables (files, pandas, polars, Arrow), value coercion and personal-data guesses."""
