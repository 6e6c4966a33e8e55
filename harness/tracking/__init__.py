"""Where results go: the record of a cell or sweep as plain data, the MLflow sink (the
only module that imports mlflow) and the store a report reads back."""
