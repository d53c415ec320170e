defmodule Snakepit.Test.Telemetry do
  @moduledoc """
  For your application's tests: forwards `:telemetry` events to the test
  process as `{:telemetry, event, measurements, metadata}`.

      ref = Snakepit.Test.Telemetry.forward(Snakepit.Telemetry.Naming.python_events())
      on_exit(fn -> Snakepit.Test.Telemetry.detach(ref) end)
      assert_receive {:telemetry, [:snakepit, :python, :call, :stop], %{duration: _}, _}

  Options: `:only` - a metadata map the events must match (e.g.
  `only: %{worker_id: "fake-1"}`), so a test sees only its own worker's
  events when others run in the same VM; `:to` - the pid to send to
  (default the caller; a pid on another node works too).
  """

  @doc "Attaches a forwarder for `events` to the calling process; returns its handler id."
  @spec forward([[atom]], keyword) :: term
  def forward(events, opts \\ []) when is_list(events) and is_list(opts) do
    ref = {__MODULE__, make_ref()}
    only = Keyword.get(opts, :only, %{})
    to = Keyword.get(opts, :to, self())
    :ok = :telemetry.attach_many(ref, events, &__MODULE__.handle_event/4, {to, only})
    ref
  end

  @doc "Detaches a forwarder."
  @spec detach(term) :: :ok | {:error, :not_found}
  def detach(ref), do: :telemetry.detach(ref)

  @doc false
  def handle_event(event, measurements, metadata, {pid, only}) do
    if Enum.all?(only, fn {k, v} -> Map.get(metadata, k) == v end),
      do: send(pid, {:telemetry, event, measurements, metadata})
  end
end
