"""GitHub webhooks: deliveries checked and recorded, events acted on, pull-request feedback."""
