"""The phone SDK through its generated Python bindings, against the real server: the stories
an Android or iOS app lives through, driven exactly as the app drives the library."""

import json
import time

import pytest

import vigil_ffi
from conftest import eventually


def square(lon0):
    return {
        "type": "Feature",
        "properties": {"name": "Market", "security_level": 4},
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[lon0, 0.0], [lon0 + 1, 0.0], [lon0 + 1, 1.0], [lon0, 1.0], [lon0, 0.0]]],
        },
    }


def alert(target):
    return {
        "translations": {
            "en": {"title": "Shelter in place", "body": "Gunfire near the market."},
            "ar": {"title": "ابقوا في أماكنكم", "body": "إطلاق نار قرب السوق."},
        },
        "severity": "severe",
        "target": target,
    }


def fix(lat, lon, ms_ago=0):
    return vigil_ffi.GeoFix(
        lat=lat, lon=lon, accuracy_m=10.0, recorded_at_ms=int(time.time() * 1000) - ms_ago
    )


def placement_of(alert_id, wanted):
    def accept(event):
        return event.is_placement() and event.alert_id == alert_id and event.placement == wanted

    return accept


async def test_a_tracked_phone_gets_a_geofenced_alert_and_acknowledges_it(
    accounts, adviser, open_phone
):
    area = (await adviser.post("/areas", square(30.0)))["id"]
    phone = await open_phone(accounts["staff"]["tracked"])
    # The app keeps the session in its own secret store (the Keychain on iOS).
    assert phone.secrets.kept.get("vigil.refresh_token"), "the token went to the app's store"
    phone.client.start()
    await phone.next_event(lambda e: e.is_connected())
    await phone.client.record_fix(fix(0.5, 30.5))
    await phone.drained()
    preview = await adviser.post("/alerts/preview", {"areas": [area]})
    assert preview["by_reason"]["inside_area"] == 1, preview

    sent = await adviser.post("/alerts", alert({"areas": [area]}))
    got = await phone.next_message("alert")
    assert got["alert_id"] == sent["id"]
    assert got["translations"]["ar"]["title"] == "ابقوا في أماكنكم", "right-to-left text untouched"
    # The phone also knows, by itself, that it stands inside the alert's area.
    await phone.next_event(placement_of(sent["id"], vigil_ffi.AlertPlacement.INSIDE))

    await phone.client.receipt(sent["id"], vigil_ffi.ReceiptState.ACKNOWLEDGED)

    async def acknowledged():
        rows = await adviser.get(f"/alerts/{sent['id']}/recipients")
        return rows and rows[0]["state"] == "acknowledged"

    await eventually("the acknowledgement reached the ledger", acknowledged)


async def test_a_location_less_phone_is_told_inside_and_outside_without_sending_a_position(
    accounts, adviser, open_phone
):
    region = (await adviser.post("/areas", square(40.0)))["id"]
    phone = await open_phone(accounts["staff"]["location_less"])
    await phone.client.set_location_less(True)
    await phone.client.follow_areas([region])
    phone.client.start()
    await phone.next_event(lambda e: e.is_connected())
    circle = {
        "shapes": [
            {
                "type": "Feature",
                "properties": {"radius_m": 5000.0},
                "geometry": {"type": "Point", "coordinates": [40.1, 0.1]},
            }
        ]
    }
    sent = await adviser.post("/alerts", alert(circle))
    got = await phone.next_message("alert")
    assert got["alert_id"] == sent["id"]
    # The client fetched the alert's place by itself; before a position it is "in your region".
    await phone.next_event(placement_of(sent["id"], vigil_ffi.AlertPlacement.IN_REGION))

    def where(placements):
        return {p.alert_id: p.placement for p in placements}[sent["id"]]

    # The phone walks into the circle and out again; only the phone knows.
    assert where(phone.client.device_moved(0.5, 40.5)) == vigil_ffi.AlertPlacement.IN_REGION
    assert where(phone.client.device_moved(0.1, 40.11)) == vigil_ffi.AlertPlacement.INSIDE
    await phone.next_event(placement_of(sent["id"], vigil_ffi.AlertPlacement.INSIDE))
    assert where(phone.client.device_moved(0.9, 40.9)) == vigil_ffi.AlertPlacement.IN_REGION
    await phone.next_event(placement_of(sent["id"], vigil_ffi.AlertPlacement.IN_REGION))
    # The OS is asked to wake the app at the circle's border.
    regions = phone.client.watch_regions(vigil_ffi.Platform.IOS)
    assert [r.alert_id for r in regions] == [sent["id"]]
    # A circle alert is watched at its own border.
    assert abs(regions[0].radius_m - 5000.0) < 1.0, regions[0].radius_m

    # A fix recorded by mistake in this mode is refused by the server and dropped, not retried.
    await phone.client.record_fix(fix(0.1, 40.11))
    await phone.next_event(lambda e: e.is_refused())
    await phone.client.receipt(sent["id"], vigil_ffi.ReceiptState.READ)
    await phone.drained()
    # Cancelling the alert takes it off the phone's list.
    await adviser.post(f"/alerts/{sent['id']}/cancel", {})
    await phone.next_event(lambda e: e.is_placement() and e.alert_id == sent["id"] and e.placement is None)
    # The harness then scans every position table and the tracker for this person.


async def test_an_sos_and_its_chat_across_a_network_cut(accounts, operator, open_phone):
    phone = await open_phone(accounts["staff"]["sos"])
    phone.client.start()
    await phone.next_event(lambda e: e.is_connected())
    case = await phone.client.press_sos("car stopped at a roadblock", None, False)
    assert case.status == "open", case
    assert case.conversation_id is not None, case
    chat = case.conversation_id
    await phone.client.send_chat(chat, "they took my phone charger")
    await phone.drained()
    # The network drops; the person types on; the connection comes back.
    phone.client.stop()
    await phone.client.send_chat(chat, "I am in a shop by the road")
    assert (await phone.client.pending()).others == 1
    phone.client.start()
    await phone.drained()
    said = json.dumps(await operator.get(f"/conversations/{chat}/messages"), ensure_ascii=False)
    assert said.count("they took my phone charger") == 1, said
    assert said.count("I am in a shop by the road") == 1, said
    # The operations room answers; the phone hears it on the stream.
    await operator.post(
        f"/conversations/{chat}/messages",
        {"body": "Stay there, a car is coming", "client_id": "op-1"},
    )
    def from_the_room(event):
        if event.is_message() and event.message.kind == "chat":
            said = json.loads(event.message.payload_json)
            return said if said["body"] == "Stay there, a car is coming" else None
        return None

    got = await phone.next_event(from_the_room)
    assert got["conversation_id"] == chat, got


async def test_a_rollcall_answered_offline_is_delivered_on_reconnect(accounts, operator, open_phone):
    phone = await open_phone(accounts["staff"]["rollcall"])
    phone.client.start()
    await phone.next_event(lambda e: e.is_connected())
    rc = await operator.post(
        "/rollcalls", {"title": "Explosion near the market", "target": {"roles": ["staff"]}}
    )
    got = await phone.next_message("rollcall")
    assert got["rollcall_id"] == rc["id"]
    # The network drops before the person answers.
    phone.client.stop()
    await phone.client.answer_rollcall(
        rc["id"], vigil_ffi.RollcallAnswer.NEED_HELP, "hurt leg, in the clinic", None
    )
    board = await operator.get(f"/rollcalls/{rc['id']}")
    assert board["board"]["need_help"] == 0, board
    phone.client.start()
    await phone.drained()
    board = await operator.get(f"/rollcalls/{rc['id']}")
    assert board["board"]["need_help"] == 1, board


async def test_bad_input_reaches_the_app_as_typed_errors(tmp_path):
    with pytest.raises(vigil_ffi.VigilError.BadAddress):
        await vigil_ffi.VigilClient.open("http://vigil.example.org", str(tmp_path), None)
    client = await vigil_ffi.VigilClient.open(
        __import__("conftest").URL, str(tmp_path), None
    )
    with pytest.raises(vigil_ffi.VigilError.SignedOut):
        await client.login("nobody@test.example", "wrong password")
    with pytest.raises(vigil_ffi.VigilError.SignedOut):
        await client.set_location_less(True)
