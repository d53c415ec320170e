%% @doc Helpers for testing that code emits the expected telemetry events.
-module(telemetry_test).

-export([attach_event_handlers/2]).

%% Exported so that the attached handler is an external function.
-export([handle_event/4]).

%% @doc Attaches a handler to `Events' that forwards them to `DestPid' as messages.
%%
%% Each event is sent as `{EventName, Ref, Measurements, Metadata}', where
%% `Ref' is the reference returned by this function. `Ref' is also the
%% handler ID, so `telemetry:detach(Ref)' removes the handler.
%%
%% In Elixir:
%% ```
%% ref = :telemetry_test.attach_event_handlers(self(), [[:my_app, :done]])
%% MyApp.work()
%% assert_received {[:my_app, :done], ^ref, %{}, %{}}
%% '''
-spec attach_event_handlers(DestPid, Events) -> reference() when
      DestPid :: pid(),
      Events :: [telemetry:event_name(), ...].
attach_event_handlers(DestPid, Events) when is_pid(DestPid), is_list(Events) ->
    Ref = make_ref(),
    ok = telemetry:attach_many(Ref, Events, fun ?MODULE:handle_event/4,
                               #{dest_pid => DestPid, ref => Ref}),
    Ref.

%% @private
handle_event(EventName, Measurements, Metadata, #{dest_pid := DestPid, ref := Ref}) ->
    DestPid ! {EventName, Ref, Measurements, Metadata},
    ok.
