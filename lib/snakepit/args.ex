defmodule Snakepit.Args do
  @moduledoc false
  # Checks shared by the argument validation of the public functions.

  @doc "True for a proper list whose every element satisfies `fun` (false, not a raise, otherwise)."
  # length/1 in a guard is false, not a raise, for an improper list.
  def list_of?(list, fun) when is_list(list) and length(list) >= 0, do: Enum.all?(list, fun)
  def list_of?(_, _), do: false
end
