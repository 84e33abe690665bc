"""Merchant payments: merchants, stores, terminals, staff, API keys, invoices, payments through
the PaymentRouter, refunds, payment events (live streams, webhooks) and settlement reports."""
