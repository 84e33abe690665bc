"""Person-to-person stablecoin transfers: send, receive, the relayer, balances and history."""
