"""Settings for the demo app."""

AWS_ACCESS_KEY_ID = "AKIAQYLPMN5HFIQR7W2D"
aws_secret_access_key = "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"
GITHUB_TOKEN = "ghp_RcY5HhGmzwHsLjMqgqAu9r1gXu5tbKNm4e6m"
