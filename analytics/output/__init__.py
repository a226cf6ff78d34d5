"""What the analytics hand out: the quarterly report (xlsx, html, csv) in :mod:`.report`,
and the figures the pages draw (:mod:`.map_chart`, :mod:`.drill_charts`). Chart builders
take data and return plotly figures; nothing here reads a store or a database."""
