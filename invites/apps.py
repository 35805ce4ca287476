from django.apps import AppConfig


class InvitesConfig(AppConfig):
    name = "invites"

    def ready(self) -> None:
        # Fill the protocol command registry with this app's commands, and give the wire what it needs of
        # invitations through its registration points (protocol/ imports no app).
        from invites import handlers, handshake
        from invites.services import conduit
        from protocol import hooks
        from protocol.registry import Family

        handshake.register()
        hooks.on_session_start(Family.INVITED, handlers.claimer_online)
        hooks.on_session_close(Family.INVITED, handlers.claimer_offline)
        hooks.on_channel_message(conduit.CONDUIT_UPDATED, conduit.on_conduit_updated)
