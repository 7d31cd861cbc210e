"""A local stand-in for one vendor's token API, for the tests of the vendor plugins.

It answers on 127.0.0.1 what the vendor's own packages say the API answers, and checks every
request's signature with the vendor's own signer code, so neither our plugin nor the real
vendor client can pass with a request the vendor would refuse:

  jdcloud      JD Cloud JCR GetAuthorizationToken:
               POST /v1/regions/{regionId}/registries/{registryName}:getAuthorizationToken
               (jdcloud_sdk/services/containerregistry/apis/GetAuthorizationTokenRequest.py),
               answer {"requestId", "result": {"authorizationToken", "loginCmdLine",
               "expiresAt"}} (models/AuthorizationData.py; envelope and errors:
               jdcloud_sdk/core/jdcloudresponse.py), signature JDCLOUD3-HMAC-SHA256
               (jdcloud_sdk/core/signer.py).
  huaweicloud  Huawei Cloud SWR CreateSecret: POST /v2/manage/utils/secret
               (huaweicloudsdkswr/v2/swr_client.py), answer {"auths": {host: {"auth"}}} with
               the X-Swr-Dockerlogin and X-Swr-Expireat headers
               (huaweicloudsdkswr/v2/model/create_secret_response.py), errors
               {"error_code", "error_msg"}, signature SDK-HMAC-SHA256
               (huaweicloudsdkcore/signer/signer.py).

Every token it issues is a fresh password; with --htpasswd it becomes the only login of a real
registry (bcrypt, which the registry re-reads when the file changes), so a token really stops
working when the next one is issued. Each issue is logged as a JSON line to --log. While the
file --revoked exists, the keys are refused with the vendor's authentication error.

Usage: python standin.py {jdcloud,huaweicloud} --port-file F --access-key AK --secret-key SK
         --registry HOST --lifetime SECONDS --log F [--htpasswd F --username U] [--revoked F]
"""

import argparse
import base64
import datetime
import json
import os
import secrets
import sys
import time
import uuid
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

JDCLOUD_PATH_PREFIX = "/v1/regions/"
JDCLOUD_PATH_SUFFIX = ":getAuthorizationToken"
SWR_PATH = "/v2/manage/utils/secret"


def parse_authorization(value, algorithm):
    """The fields of `ALGORITHM Key=value, Key=value, ...`."""
    if not value.startswith(algorithm + " "):
        return None
    fields = {}
    for part in value[len(algorithm) + 1:].split(","):
        key, _, val = part.strip().partition("=")
        fields[key] = val
    return fields


def jdcloud_signature_ok(handler, body, access_key, secret_key):
    """Recomputes the signature with the SDK's own Signer from what the client signed."""
    from jdcloud_sdk.core import signer as sdk_signer
    from jdcloud_sdk.core.credential import Credential
    from jdcloud_sdk.core.logger import ERROR, Logger

    fields = parse_authorization(handler.headers.get("Authorization", ""), "JDCLOUD3-HMAC-SHA256")
    if not fields or "Credential" not in fields:
        return False, "no JDCLOUD3-HMAC-SHA256 Authorization"
    credential = fields["Credential"].split("/")
    if len(credential) != 5 or credential[0] != access_key:
        return False, "unknown access key"
    _, day, region, service, terminal = credential
    path_region = handler.path[len(JDCLOUD_PATH_PREFIX):].split("/")[0]
    if service != "containerregistry" or terminal != "jdcloud3_request" or region != path_region:
        return False, "credential scope %s does not fit the call" % fields["Credential"]
    signed = [h for h in fields.get("SignedHeaders", "").split(";") if h]
    if "host" not in signed:
        return False, "the host is not signed"
    date = handler.headers.get("x-jdcloud-date", "")
    if not date.startswith(day):
        return False, "x-jdcloud-date is not the signed day"
    headers = {h: handler.headers.get(h, "") for h in signed if h != "host"}
    # The SDK signs with its own clock and nonce unless given: pin both to the request's.
    when = datetime.datetime.strptime(date, "%Y%m%dT%H%M%SZ")
    sdk_signer.Signer._Signer__now = lambda self: when
    uri = "http://%s%s" % (handler.headers.get("Host", ""), handler.path)
    sdk_signer.Signer(Logger(ERROR)).sign(
        method="POST", service=service, region=region, uri=uri, headers=headers,
        data=body.decode("utf-8"), credential=Credential(access_key, secret_key), security_token="")
    expected = parse_authorization(headers["Authorization"], "JDCLOUD3-HMAC-SHA256")
    if expected["SignedHeaders"] != fields["SignedHeaders"]:
        return False, "signed headers %s, the SDK signs %s" % (fields["SignedHeaders"], expected["SignedHeaders"])
    if expected["Signature"] != fields.get("Signature"):
        return False, "signature mismatch"
    return True, ""


def huaweicloud_signature_ok(handler, body, access_key, secret_key):
    """Recomputes the signature with the SDK's own Signer from what the client signed."""
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.sdk_request import SdkRequest
    from huaweicloudsdkcore.signer.signer import Signer

    fields = parse_authorization(handler.headers.get("Authorization", ""), "SDK-HMAC-SHA256")
    if not fields or fields.get("Access") != access_key:
        return False, "unknown access key"
    signed = [h for h in fields.get("SignedHeaders", "").split(";") if h]
    if "host" not in signed or "x-sdk-date" not in signed:
        return False, "the host or the date is not signed"
    url = urlsplit(handler.path)
    request = SdkRequest(
        method="POST", schema="http", host=handler.headers.get("Host", ""),
        resource_path=url.path, query_params=parse_qsl(url.query, keep_blank_values=True),
        header_params={h: handler.headers.get(h, "") for h in signed}, body=body or None)
    Signer(BasicCredentials(access_key, secret_key)).sign(request)
    expected = parse_authorization(request.header_params["Authorization"], "SDK-HMAC-SHA256")
    if expected["Signature"] != fields.get("Signature"):
        return False, "signature mismatch"
    return True, ""


class StandIn(BaseHTTPRequestHandler):
    options = None

    def log_message(self, fmt, *args):
        sys.stderr.write("standin: %s\n" % (fmt % args))

    def send_json(self, status, document, headers=()):
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        o = self.options
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if o.vendor == "jdcloud":
            self.jdcloud(body)
        else:
            self.huaweicloud(body)

    def issue(self):
        """A fresh password: the registry's only login from now on, logged."""
        o = self.options
        password = secrets.token_hex(16)
        now = int(time.time())
        if o.htpasswd:
            # The registry accepts only bcrypt entries; crypt has them (deprecated from 3.11).
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                import crypt
            entry = "%s:%s\n" % (o.username, crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH)))
            with open(o.htpasswd + ".new", "w") as f:
                f.write(entry)
            os.replace(o.htpasswd + ".new", o.htpasswd)
        with open(o.log, "a") as f:
            f.write(json.dumps({"password": password, "issuedAt": now, "expiresAt": now + o.lifetime}) + "\n")
        return password, now + o.lifetime

    def jdcloud(self, body):
        o = self.options
        request_id = uuid.uuid4().hex
        if not (self.path.startswith(JDCLOUD_PATH_PREFIX) and self.path.endswith(JDCLOUD_PATH_SUFFIX)):
            return self.send_json(404, {"requestId": request_id, "error": {
                "code": 404, "status": "NOT_FOUND", "message": "no such API %s" % self.path}})
        ok, why = jdcloud_signature_ok(self, body, o.access_key, o.secret_key)
        if not ok or os.path.exists(o.revoked):
            message = "The access key is disabled" if ok else "Authentication failed: " + why
            return self.send_json(401, {"requestId": request_id, "error": {
                "code": 401, "status": "UNAUTHENTICATED", "message": message}})
        password, expires_at = self.issue()
        token = base64.b64encode(("%s:%s" % (o.username, password)).encode()).decode()
        self.send_json(200, {"requestId": request_id, "result": {
            "authorizationToken": token,
            "loginCmdLine": "docker login -u %s -p %s %s" % (o.username, password, o.registry),
            "expiresAt": expires_at}})

    def huaweicloud(self, body):
        o = self.options
        request_id = uuid.uuid4().hex
        if urlsplit(self.path).path != SWR_PATH:
            return self.send_json(404, {"error_code": "SVCSTG.SWR.4040000",
                                        "error_msg": "no such API", "request_id": request_id})
        ok, why = huaweicloud_signature_ok(self, body, o.access_key, o.secret_key)
        if not ok or os.path.exists(o.revoked):
            message = "The access key is disabled" if ok else "Incorrect IAM authentication information: " + why
            return self.send_json(401, {"error_code": "APIGW.0301", "error_msg": message,
                                        "request_id": request_id})
        password, expires_at = self.issue()
        auth = base64.b64encode(("%s:%s" % (o.username, password)).encode()).decode()
        expire = datetime.datetime.fromtimestamp(expires_at, datetime.timezone.utc)
        self.send_json(200, {"auths": {o.registry: {"auth": auth}}}, headers=[
            ("X-Swr-Dockerlogin", "docker login -u %s -p %s %s" % (o.username, password, o.registry)),
            ("X-Swr-Expireat", expire.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"),
            ("X-Request-Id", request_id)])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("vendor", choices=["jdcloud", "huaweicloud"])
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--access-key", required=True)
    parser.add_argument("--secret-key", required=True)
    parser.add_argument("--registry", required=True)
    parser.add_argument("--lifetime", type=int, default=12 * 3600)
    parser.add_argument("--log", required=True)
    parser.add_argument("--htpasswd", default="")
    parser.add_argument("--username", default="minted")
    parser.add_argument("--revoked", default=os.devnull + ".never")
    StandIn.options = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    port_file = StandIn.options.port_file
    with open(port_file + ".new", "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(port_file + ".new", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
