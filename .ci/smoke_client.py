"""Smoke client: wait for the server, sign up, create a room, exchange a message."""

import asyncio
import json
import re
import sys

import httpx
from websockets.asyncio.client import connect


async def main(port: int) -> None:
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        for _ in range(300):
            try:
                if (await http.get("/healthz")).status_code == 200:
                    break
            except httpx.TransportError:
                await asyncio.sleep(0.1)  # waiting for the port to open
        else:
            raise SystemExit("smoke: the server never answered /healthz")
        res = await http.post(
            "/v1/api/auth/signup",
            json={"user_name": "smoke", "email": "smoke@example.com", "password": "password1"},
        )
        res.raise_for_status()
        token = res.json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        res = await http.post("/v1/api/chat/create", json={"name": "smoke"}, headers=headers)
        res.raise_for_status()
        room_id = res.json()["chatRoom"]["ID"]
        # /docs and its ReDoc bundle come from the wheel (package data), not a CDN.
        docs = await http.get("/docs")
        docs.raise_for_status()
        script = re.search(r'<script src="(/docs/[^"]+)"', docs.text)
        assert script, "smoke: /docs names no script of its own"
        bundle = await http.get(script.group(1))
        assert bundle.status_code == 200 and len(bundle.content) > 500_000, bundle.status_code
    async with connect(f"ws://127.0.0.1:{port}/v1/ws?room_id={room_id}&jwt={token}") as ws:
        await ws.send(json.dumps({"chatRoomId": room_id, "chatMessage": "smoke test"}))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame["Event"] == "message":
                assert frame["Body"]["chatMessage"] == "smoke test", frame
                break
    print(f"smoke: message {frame['Body']['ID']} stored and delivered")


asyncio.run(main(int(sys.argv[1])))
