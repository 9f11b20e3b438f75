"""A call's states and what moves it between them, as data.

The rules:
  * A call starts EARLY with the initial INVITE (one without a To tag).
  * A 2xx to an INVITE makes it CONFIRMED (a forked or re-INVITE 2xx keeps it so).
  * A final error response to the initial INVITE, a CANCEL, a BYE or its
    timer ends an EARLY call; a BYE or its timer ends a CONFIRMED one.
  * A re-INVITE or UPDATE only refreshes a CONFIRMED call (in EARLY it
    changes nothing but its SDP).
  * Anything not in the table leaves the state as it is.
Every state but ENDED holds the call's media for the lifetime policy.py
gives that state, counted from the transition.
"""

EARLY = "early"
CONFIRMED = "confirmed"
ENDED = "ended"

# Triggers (also CallEnded.why).
ANSWERED = "2xx to INVITE"
REJECTED = "final error response"
CANCELLED = "CANCEL"
HUNG_UP = "BYE"
REFRESHED = "re-INVITE or UPDATE"
EXPIRED = "expired"

TRANSITIONS = {
    EARLY: {
        ANSWERED: CONFIRMED,
        REJECTED: ENDED,
        CANCELLED: ENDED,
        HUNG_UP: ENDED,
        EXPIRED: ENDED,
    },
    CONFIRMED: {
        ANSWERED: CONFIRMED,
        REFRESHED: CONFIRMED,
        HUNG_UP: ENDED,
        EXPIRED: ENDED,
    },
}


def next_state(state, trigger):
    """The state trigger moves a call in `state` to, or None when it changes nothing."""
    return TRANSITIONS.get(state, {}).get(trigger)
