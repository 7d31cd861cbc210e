"""Huawei Cloud's own SDK client for SWR CreateSecret, pointed at a stand-in: proves the
stand-in answers what the SDK reads. Keys from HUAWEICLOUD_SDK_AK/SK/PROJECT_ID, as the SDK's
environment provider takes them. Prints {"auths": {host: auth}, "expireAt": ...} as JSON.

Usage: python swr_client.py ENDPOINT
"""

import json
import os
import sys

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkswr.v2 import CreateSecretRequest, SwrClient

credentials = BasicCredentials(os.environ["HUAWEICLOUD_SDK_AK"], os.environ["HUAWEICLOUD_SDK_SK"],
                               os.environ["HUAWEICLOUD_SDK_PROJECT_ID"])
client = SwrClient.new_builder().with_credentials(credentials).with_endpoints([sys.argv[1]]).build()
try:
    response = client.create_secret(CreateSecretRequest())
except ClientRequestException as e:
    print(json.dumps({"status": e.status_code, "error_code": e.error_code, "error_msg": e.error_msg}))
    sys.exit(4)
print(json.dumps({"auths": {host: info.auth for host, info in response.auths.items()},
                  "expireAt": response.x_swr_expireat}))
