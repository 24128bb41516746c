"""Source plug-ins that turn telephony and helpdesk exports into normalised contacts."""
