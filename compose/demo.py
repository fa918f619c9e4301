"""Drops one clean and one EICAR object into the unprocessed bucket, so `make run` shows both
routes in avscan's log. Waits a moment first so avscan is polling."""
import argparse
import time
import uuid

import boto3

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"

parser = argparse.ArgumentParser()
parser.add_argument("--endpoint", default="http://127.0.0.1:4566")
parser.add_argument("--bucket", default="avscan-unprocessed")
parser.add_argument("--delay", type=float, default=3.0)
args = parser.parse_args()
time.sleep(args.delay)
s3 = boto3.client("s3", endpoint_url=args.endpoint, region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
submission = f"demo-{uuid.uuid4()}"
s3.put_object(Bucket=args.bucket, Key=f"{submission}/hello world.txt", Body=b"hello, avscan\n")
s3.put_object(Bucket=args.bucket, Key=f"{submission}/eicar.com", Body=EICAR)
print(f"demo: uploaded {submission}/hello world.txt (clean) and {submission}/eicar.com (EICAR)", flush=True)
