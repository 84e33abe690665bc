"""The wallet app's server-rendered shell: templates, static assets, translations."""
