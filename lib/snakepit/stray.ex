defmodule Snakepit.Stray do
  @moduledoc false
  # What every long-lived process of the project does with a message, cast
  # or call it does not know: any process may send anything, so it is logged
  # at debug level and ignored; a call is answered `{:error, :unknown_call}`.

  require Logger

  def call(module, request, state) do
    log(module, "call", request)
    {:reply, {:error, :unknown_call}, state}
  end

  def cast(module, message, state) do
    log(module, "cast", message)
    {:noreply, state}
  end

  def info(module, message, state) do
    log(module, "message", message)
    {:noreply, state}
  end

  defp log(module, kind, term) do
    Logger.debug(fn ->
      "#{inspect(module)} ignored an unknown #{kind}: #{inspect(term, limit: 10, printable_limit: 200)}"
    end)
  end
end
