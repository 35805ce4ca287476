"""Protocol handlers of the invitation family (greeter and claimer sides)."""
