"""Parse every message in a Maildir with Python's email package (a real
mail reader) and print them as JSON: headers (all values of each), the
plain-text and HTML parts decoded, for trailwatch's email tests."""

import email
import email.policy
import json
import mailbox
import sys

out = []
for key, msg in sorted(mailbox.Maildir(sys.argv[1], create=False).items()):
    m = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    headers = {}
    for k, v in m.items():
        headers.setdefault(k.lower(), []).append(str(v))
    parts = {}
    for part in m.walk():
        ct = part.get_content_type()
        if ct in ("text/plain", "text/html") and ct not in parts:
            parts[ct] = part.get_content()
    out.append(
        {
            "headers": headers,
            "text": parts.get("text/plain"),
            "html": parts.get("text/html"),
            "raw_header_block": msg.as_bytes().split(b"\n\n", 1)[0].decode("latin-1"),
        }
    )
json.dump(out, sys.stdout)
