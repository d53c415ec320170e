%% @private
%% Top-level supervisor: it keeps the process that owns the handler table alive.
-module(telemetry_sup).

-behaviour(supervisor).

-export([start_link/0]).
-export([init/1]).

start_link() ->
    supervisor:start_link({local, ?MODULE}, ?MODULE, []).

init([]) ->
    Flags = #{strategy => one_for_one,
              intensity => 1,
              period => 5},
    TableOwner = #{id => telemetry_handler_table,
                   start => {telemetry_handler_table, start_link, []},
                   restart => permanent,
                   shutdown => 5000,
                   type => worker,
                   modules => [telemetry_handler_table]},
    {ok, {Flags, [TableOwner]}}.
