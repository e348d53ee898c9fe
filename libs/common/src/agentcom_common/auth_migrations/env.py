from agentcom_common import auth, migrations

migrations.run_env(auth.metadata)
