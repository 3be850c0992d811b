"""AWS CDK (Python) app that deploys what the restore-assets AWS backend needs."""
