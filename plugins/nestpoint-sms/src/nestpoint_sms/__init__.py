"""Nestpoint plugin ``sms``: channel connector: SMS through a signed HTTP gateway with
delivery receipts."""
