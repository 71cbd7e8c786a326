"""Who may call what: API keys with scopes, checked on every route but /health (docs/architecture.md,
"Security")."""
