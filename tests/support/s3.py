"""A local S3 for the tests and the bench: moto's server mode, in its own process.

Its own process, not moto's in-process ThreadedMotoServer: moto keeps objects
in its own memory, and a test that measures the finalizing process's memory
must not count the server's. It listens on a free loopback port; stopping it
and starting another on the same port stages an outage and a recovery.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

import boto3
from botocore.config import Config

from .processes import free_port

# Dummy credentials: moto accepts any, botocore insists on some.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
REGION = "us-east-1"


@dataclass
class LocalS3:
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    # moto's own settings, e.g. S3_UPLOAD_PART_MIN_SIZE: smaller parts keep the chunk tests fast
    env: dict[str, str] = field(default_factory=dict)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalS3:
        env = {**os.environ, **CREDENTIALS, **self.env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.client().list_buckets()
                return self
            except Exception:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto did not start on port {self.port}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            config=Config(retries={"max_attempts": 1}, connect_timeout=2),
        )

    def django_settings(self, bucket: str) -> dict:
        """The settings that make django-storages' S3Storage use this server and bucket."""
        return {
            "AWS_S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_STORAGE_BUCKET_NAME": bucket,
            "AWS_S3_REGION_NAME": REGION,
            # No credentials here: boto3 finds them in the environment (CREDENTIALS), as it
            # finds an instance role's in production. An outage should fail an attempt in
            # seconds, not after botocore's own retries: the finalization task has its own.
            "AWS_S3_CLIENT_CONFIG": Config(retries={"max_attempts": 1}, connect_timeout=2),
        }
