"""Analytics: the Heze model, survey and score imports, reports, charts, and the control center."""
