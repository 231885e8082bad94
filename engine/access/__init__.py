"""Who may do what: identities, roles, API tokens and the one place that authorises."""
