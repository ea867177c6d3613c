"""Checks the bundled Exchange simulator against exchangelib, a real-world EWS client.

The Rust test `tests/it/sim_exchangelib.rs` starts the simulator with Basic auth and a
service account allowed to impersonate the rooms, then runs this script with:

    SIM_EWS_URL       the simulator's EWS endpoint (http://127.0.0.1:PORT/EWS/Exchange.asmx)
    SIM_CONTROL_URL   the simulator's base URL for the control API (http://127.0.0.1:PORT)
    SIM_USERNAME      the service account
    SIM_PASSWORD      its password
    SIM_ROOM          a room mailbox the account may impersonate

Every check raises on a wrong value; the script exits 0 only when all pass, and
otherwise prints which check failed and why, and exits 1.
"""

import datetime
import json
import os
import sys
import threading
import traceback
import urllib.parse
import urllib.request

from exchangelib import BASIC, IMPERSONATION, Account, Configuration, Credentials
from exchangelib.ewsdatetime import UTC, EWSDateTime
from exchangelib.items import CalendarItem
from exchangelib.properties import CreatedEvent, DeletedEvent, ModifiedEvent, MovedEvent


class ConformanceError(Exception):
    """A value exchangelib read from the simulator is not what the simulator holds."""


def check(condition, message):
    if not condition:
        raise ConformanceError(message)


def env(name):
    value = os.environ.get(name)
    if not value:
        raise ConformanceError(f"environment variable {name} is not set")
    return value


class Control:
    """The simulator's control API, through urllib."""

    def __init__(self, base_url, room):
        self.base_url = base_url.rstrip("/")
        self.room = urllib.parse.quote(room)

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read().decode()
        return json.loads(text) if text.strip() else None

    def create(self, appointment):
        return self.call("POST", f"/_sim/mailboxes/{self.room}/appointments", appointment)

    def update(self, uid, patch):
        return self.call("PATCH", f"/_sim/mailboxes/{self.room}/appointments/{urllib.parse.quote(uid)}", patch)

    def cancel(self, uid):
        return self.call("POST", f"/_sim/mailboxes/{self.room}/appointments/{urllib.parse.quote(uid)}/cancel", {})

    def delete(self, uid):
        return self.call("DELETE", f"/_sim/mailboxes/{self.room}/appointments/{urllib.parse.quote(uid)}?mode=hard")


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def connect():
    credentials = Credentials(env("SIM_USERNAME"), env("SIM_PASSWORD"))
    # No version given: exchangelib probes the server and reads ServerVersionInfo.
    config = Configuration(service_endpoint=env("SIM_EWS_URL"), credentials=credentials, auth_type=BASIC)
    account = Account(
        primary_smtp_address=env("SIM_ROOM"),
        config=config,
        autodiscover=False,
        access_type=IMPERSONATION,
    )
    return account


def check_version(account):
    build = account.version.build
    check(build.major_version == 15, f"major version from ServerVersionInfo is {build.major_version}, want 15")
    check(
        account.version.api_version.startswith("Exchange201"),
        f"detected API version {account.version.api_version!r} is not an Exchange 2010+ version",
    )


def check_calendar_folder(account):
    calendar = account.calendar
    check(calendar.id, "GetFolder returned no calendar folder id")
    check(
        calendar.folder_class in (None, "IPF.Appointment"),
        f"calendar folder class is {calendar.folder_class!r}",
    )


def seed(control, now):
    day = now.replace(hour=0, minute=0, second=0, microsecond=0) + datetime.timedelta(days=1)
    single_start = day + datetime.timedelta(hours=9)
    single = control.create(
        {
            "subject": "Conformance single",
            "start": iso(single_start),
            "end": iso(single_start + datetime.timedelta(hours=1)),
            "is_all_day": False,
            "organizer": "alice@sim.example",
            "attendees": ["bob@sim.example"],
            "time_zone": "Europe/Berlin",
            "recurrence": None,
            "location": "Room",
            "uid": None,
        }
    )
    series_start = day + datetime.timedelta(hours=13)
    series = control.create(
        {
            "subject": "Conformance daily",
            "start": iso(series_start),
            "end": iso(series_start + datetime.timedelta(minutes=30)),
            "is_all_day": False,
            "organizer": "alice@sim.example",
            "attendees": [],
            "time_zone": "UTC",
            "recurrence": {
                "pattern": {"type": "daily", "interval": 1},
                "start_date": series_start.strftime("%Y-%m-%d"),
                "end": {"type": "numbered", "count": 3},
            },
            "location": None,
            "uid": None,
        }
    )
    return single, single_start, series, series_start, day


def check_view_and_items(account, single, single_start, series, series_start, day):
    start = EWSDateTime.from_datetime(day).astimezone(UTC)
    end = EWSDateTime.from_datetime(day + datetime.timedelta(days=7)).astimezone(UTC)
    occurrences = list(account.calendar.view(start=start, end=end))
    daily = [item for item in occurrences if item.subject == "Conformance daily"]
    check(len(daily) == 3, f"calendar view expanded the daily series into {len(daily)} occurrences, want 3")
    starts = sorted(item.start for item in daily)
    for index, got in enumerate(starts):
        want = series_start + datetime.timedelta(days=index)
        check(got == want, f"occurrence {index} starts {got}, want {want}")
    singles = [item for item in occurrences if item.subject == "Conformance single"]
    check(len(singles) == 1, f"calendar view returned {len(singles)} copies of the single, want 1")

    fetched = list(account.fetch(ids=[singles[0]]))
    check(len(fetched) == 1 and isinstance(fetched[0], CalendarItem), f"GetItem returned {fetched!r}")
    item = fetched[0]
    check(item.subject == "Conformance single", f"subject is {item.subject!r}")
    check(item.start == single_start, f"start is {item.start}, want {single_start}")
    check(item.end == single_start + datetime.timedelta(hours=1), f"end is {item.end}")
    check(item.uid == single["uid"], f"uid is {item.uid!r}, want {single['uid']!r}")
    check(item.organizer is not None and item.organizer.email_address == "alice@sim.example",
          f"organizer is {item.organizer!r}")
    attendees = [attendee.mailbox.email_address for attendee in (item.required_attendees or [])]
    check("bob@sim.example" in attendees, f"required attendees are {attendees!r}")
    check(item.is_cancelled is False, f"is_cancelled is {item.is_cancelled!r}")
    check(item.recurrence is None, f"single has recurrence {item.recurrence!r}")

    masters = list(account.fetch(ids=[(series["item_id"], series["change_key"])]))
    check(len(masters) == 1 and isinstance(masters[0], CalendarItem), f"GetItem of the master returned {masters!r}")
    recurrence = masters[0].recurrence
    check(recurrence is not None, "recurring master has no recurrence")
    check(getattr(recurrence.boundary, "number", None) == 3, f"recurrence boundary is {recurrence.boundary!r}")
    check(masters[0].type == "RecurringMaster", f"master type is {masters[0].type!r}")


def check_cancelled(account, control, day):
    start = day + datetime.timedelta(days=2, hours=15)
    made = control.create(
        {
            "subject": "Conformance cancelled",
            "start": iso(start),
            "end": iso(start + datetime.timedelta(hours=1)),
            "is_all_day": False,
            "organizer": "alice@sim.example",
            "attendees": ["bob@sim.example"],
            "time_zone": "UTC",
            "recurrence": None,
            "location": None,
            "uid": None,
        }
    )
    cancelled = control.cancel(made["uid"])
    items = list(account.fetch(ids=[(cancelled["item_id"], cancelled["change_key"])]))
    check(len(items) == 1 and isinstance(items[0], CalendarItem), f"GetItem of the cancelled meeting returned {items!r}")
    check(items[0].is_cancelled is True, f"is_cancelled of a cancelled meeting is {items[0].is_cancelled!r}")
    check(items[0].subject.startswith("Canceled:"), f"cancelled subject is {items[0].subject!r}")


def check_sync(account, control, day):
    calendar = account.calendar
    changes = list(calendar.sync_items())
    creates = [item for change, item in changes if change == "create"]
    check(len(creates) >= 2, f"sync from no state returned {len(creates)} creates, want at least 2")
    state = calendar.item_sync_state
    check(state, "sync from no state left no sync state")

    start = day + datetime.timedelta(days=3, hours=8)
    added = control.create(
        {
            "subject": "Conformance after sync",
            "start": iso(start),
            "end": iso(start + datetime.timedelta(hours=1)),
            "is_all_day": False,
            "organizer": "alice@sim.example",
            "attendees": [],
            "time_zone": "UTC",
            "recurrence": None,
            "location": None,
            "uid": None,
        }
    )
    delta = list(calendar.sync_items(sync_state=state))
    subjects = [item.subject for change, item in delta if change == "create"]
    check(subjects == ["Conformance after sync"], f"sync from a saved state created {subjects!r}")
    return added


def check_streaming(account, control, day):
    calendar = account.calendar
    subscription = calendar.subscribe_to_streaming()
    check(subscription, "Subscribe returned no subscription id")
    seen = {"created": False, "modified": False, "deleted": False}
    errors = []

    def act():
        try:
            start = day + datetime.timedelta(days=4, hours=10)
            made = control.create(
                {
                    "subject": "Conformance streamed",
                    "start": iso(start),
                    "end": iso(start + datetime.timedelta(hours=1)),
                    "is_all_day": False,
                    "organizer": "alice@sim.example",
                    "attendees": [],
                    "time_zone": "UTC",
                    "recurrence": None,
                    "location": None,
                    "uid": None,
                }
            )
            control.update(made["uid"], {"subject": "Conformance streamed (moved)"})
            control.delete(made["uid"])
        except Exception as err:  # reported after the stream ends
            errors.append(err)

    timer = threading.Timer(1.0, act)
    timer.start()
    for notification in calendar.get_streaming_events(subscription, connection_timeout=1):
        for event in notification.events:
            if isinstance(event, CreatedEvent) and event.item_id is not None:
                seen["created"] = True
            elif isinstance(event, ModifiedEvent) and event.item_id is not None:
                seen["modified"] = True
            elif isinstance(event, (DeletedEvent, MovedEvent)) and event.item_id is not None:
                seen["deleted"] = True
        if all(seen.values()):
            break
    timer.join()
    if errors:
        raise errors[0]
    check(all(seen.values()), f"streaming delivered {seen!r}")
    calendar.unsubscribe(subscription)


def main():
    steps = [
        "version detection",
        "calendar folder",
        "calendar view and GetItem",
        "sync_items",
        "streaming subscription",
    ]
    step = "connect"
    try:
        account = connect()
        control = Control(env("SIM_CONTROL_URL"), env("SIM_ROOM"))
        step = steps[0]
        check_version(account)
        step = steps[1]
        check_calendar_folder(account)
        step = steps[2]
        now = datetime.datetime.now(datetime.timezone.utc)
        single, single_start, series, series_start, day = seed(control, now)
        check_view_and_items(
            account,
            single,
            EWSDateTime.from_datetime(single_start),
            series,
            EWSDateTime.from_datetime(series_start),
            day,
        )
        check_cancelled(account, control, day)
        step = steps[3]
        check_sync(account, control, day)
        step = steps[4]
        check_streaming(account, control, day)
    except Exception as err:
        print(f"exchangelib conformance FAILED at step '{step}': {type(err).__name__}: {err}", file=sys.stderr)
        traceback.print_exc()
        return 1
    print("exchangelib conformance passed: " + ", ".join(steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
