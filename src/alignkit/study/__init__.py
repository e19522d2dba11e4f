"""`alignkit study`: selectors x budgets x seeds x methods, select -> train -> evaluate, with
shared work done once, 95% intervals over seeds and a labels-saved table."""
