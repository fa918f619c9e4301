"""Drops one clean and one EICAR object into the unprocessed bucket, so `make run` shows both
routes in avscan's log. Waits a moment first so avscan is polling.

The endpoint and bucket default to those of the local stack's `.stack/avscan.env` (the emulator
`compose/stack.sh up` last brought up, moto or ministack), the settings avscan runs with."""
import argparse
import pathlib
import time
import uuid

import boto3

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
STACK_ENV = pathlib.Path(__file__).resolve().parent.parent / ".stack" / "avscan.env"


def stack_settings(path):
    """The variables of an env file written by resources.py; none if it is missing."""
    try:
        lines = pathlib.Path(path).read_text().splitlines()
    except FileNotFoundError:
        return {}
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


parser = argparse.ArgumentParser()
parser.add_argument("--env-file", default=STACK_ENV)
parser.add_argument("--endpoint", help="default: AWS_S3_ENDPOINT_URL of --env-file, else http://127.0.0.1:4566")
parser.add_argument("--bucket", help="default: UNPROCESSED_BUCKET_NAME of --env-file, else avscan-unprocessed")
parser.add_argument("--delay", type=float, default=3.0)
args = parser.parse_args()
settings = stack_settings(args.env_file)
endpoint = args.endpoint or settings.get("AWS_S3_ENDPOINT_URL", "http://127.0.0.1:4566")
bucket = args.bucket or settings.get("UNPROCESSED_BUCKET_NAME", "avscan-unprocessed")
time.sleep(args.delay)
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
submission = f"demo-{uuid.uuid4()}"
s3.put_object(Bucket=bucket, Key=f"{submission}/hello world.txt", Body=b"hello, avscan\n")
s3.put_object(Bucket=bucket, Key=f"{submission}/eicar.com", Body=EICAR)
print(f"demo: uploaded {submission}/hello world.txt (clean) and {submission}/eicar.com (EICAR) to {endpoint}", flush=True)
